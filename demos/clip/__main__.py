from txgallery_demos.clip.run import demo

from txgallery.gallery import launch_one

launch_one(demo)
