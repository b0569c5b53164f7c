"""Small real labelled audio corpora for pretraining benchmarks, rendered or read locally."""
