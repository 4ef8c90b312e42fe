"""The demo objectives (digits, lightning_digits, text_classification), given to the study
flow as `objective` parameters, and re-exports of the package's flows for older deployments."""
