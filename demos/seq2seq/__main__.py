from txgallery.gallery import launch_one
from txgallery_demos.seq2seq.run import demo

launch_one(demo)
