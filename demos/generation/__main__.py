from txgallery_demos.generation.run import demo

from txgallery.gallery import launch_one

launch_one(demo)
