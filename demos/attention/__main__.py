from txgallery_demos.attention.run import demo

from txgallery.gallery import launch_one

launch_one(demo)
