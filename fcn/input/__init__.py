"""The in-graph input pipeline: slim Dataset/DatasetDataProvider queues and training augmentation.

Offline builders and the record format live in fcn.data; nothing here writes records.
"""
