"""The scoring protocol, in one place: every FID the project reports (mnist-gen score, the trainer's epoch
selection, python -m trainer.report, the int8 quality gate) draws this many images from this noise seed, in
batches of this size, so figures compare across tools and runs. Import-light on purpose: the CLI's --help
reads these defaults without loading numpy."""

SCORE_IMAGES = 10_000
SCORE_SEED = 0
SCORE_BATCH = 500
