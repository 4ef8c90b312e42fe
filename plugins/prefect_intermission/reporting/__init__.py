"""What people see: progress, artifacts, the terminal, events, notifications, resources, pause summaries.
"""
