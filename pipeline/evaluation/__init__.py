"""Evaluation: scores against ground truth, dataset readers, the social tasks and fine-tuning."""
