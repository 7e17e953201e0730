from txgallery.gallery import launch_one
from txgallery_demos.clip.run import demo

launch_one(demo)
