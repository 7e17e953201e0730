from txgallery.gallery import launch_one
from txgallery_demos.attention.run import demo

launch_one(demo)
