from txgallery.gallery import launch_one
from txgallery_demos.efficiency.run import demo

launch_one(demo)
