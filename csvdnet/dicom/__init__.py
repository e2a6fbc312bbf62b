"""DICOM input (study index, series selection, conversion) and output (SEG, SR, report captures)."""
