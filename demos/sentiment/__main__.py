from txgallery.gallery import launch_one
from txgallery_demos.sentiment.demo import demo

launch_one(demo)
