from txgallery_demos.seq2seq.run import demo

from txgallery.gallery import launch_one

launch_one(demo)
