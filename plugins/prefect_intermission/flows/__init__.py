"""The Prefect flows: the study flow, the trial flow, and the control flows.
"""
