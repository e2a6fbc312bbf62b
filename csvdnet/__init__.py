"""csvdnet: deep learning for cerebral small vessel disease (CSVD) on brain MRI.

Importing the package is cheap: TensorFlow is imported only by the modules that need it
(models, losses, data pipeline, training, inference, export).
"""

__version__ = "0.1.0"

DEFAULT_SEQUENCES = ("flair", "t1", "t2", "swi", "dwi")
SEGMENTATION_TASKS = ("wmh", "rssi", "lacune")
DETECTION_TASKS = ("cmb", "epvs")
LABEL_NAMES = SEGMENTATION_TASKS + DETECTION_TASKS
SCORE_TASK = "score"
"""The ordinal total-score task (the CORAL head's output key)."""
TASK_EVIDENCE = {"cmb": ("swi",), "rssi": ("dwi",)}
"""Sequences without which a marker cannot be seen: a training sample whose modality dropout
blanked all of a task's sequences carries no label for that task (the network must not learn to
report microbleeds on a blank SWI)."""
