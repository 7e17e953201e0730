from txgallery.gallery import launch_one
from txgallery_demos.sentiment.run import demo

launch_one(demo)
