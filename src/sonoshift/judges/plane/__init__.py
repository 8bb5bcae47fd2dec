"""Fetal plane classifier: compact CNN, training with early stopping on validation macro-F1, evaluation per
domain (accuracy, macro-F1, per-class recall, ECE, confusion PNG), patient-wise CV, the Spain -> Africa protocol
and the classifier's penultimate features as an ultrasound-domain embedding."""
