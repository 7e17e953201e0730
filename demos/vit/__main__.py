from txgallery_demos.vit.run import demo

from txgallery.gallery import launch_one

launch_one(demo)
