from txgallery.gallery import launch_one
from txgallery_demos.vit.run import demo

launch_one(demo)
