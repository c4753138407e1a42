"""Batch jobs: the synthetic demo world and other offline data builders."""
