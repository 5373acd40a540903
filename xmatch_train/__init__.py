"""xmatch_train: correspondence pretraining and multi-view fracture fine-tuning."""
