"""What people see: progress, artifacts, the terminal, events, notifications, resources
and links to the Prefect UI.
"""
