from txgallery_demos.sentiment.run import demo

from txgallery.gallery import launch_one

launch_one(demo)
