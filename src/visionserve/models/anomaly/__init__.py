"""Anomaly detection for the inspect surface: anomalib training, catalog, OpenVINO inference.

Modules, by cost: :mod:`.catalog` (architectures, parameter validation) and
:mod:`.inference` (OpenVINO, numpy, cv2) import no torch; :mod:`.backbones` and
:mod:`.training` bring torch, timm, Lightning and anomalib.
"""
