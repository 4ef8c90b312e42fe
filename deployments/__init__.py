"""Operations material: local Prefect stack, demo, work-pool set-up. Never imported by the package."""
