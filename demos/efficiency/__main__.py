from txgallery_demos.efficiency.run import demo

from txgallery.gallery import launch_one

launch_one(demo)
