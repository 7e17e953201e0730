from txgallery.gallery import launch_one
from txgallery_demos.finetune.run import demo

launch_one(demo)
