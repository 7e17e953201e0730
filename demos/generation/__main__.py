from txgallery.gallery import launch_one
from txgallery_demos.generation.run import demo

launch_one(demo)
