"""Dataset readers (VOC, SBD, COCO, image folders, synthetic) and the TFRecord builder."""
