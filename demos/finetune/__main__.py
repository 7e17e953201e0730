from txgallery_demos.finetune.run import demo

from txgallery.gallery import launch_one

launch_one(demo)
