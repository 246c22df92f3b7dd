"""Which backend takes a job: eligibility, shared fleet view, health, policies, reservation."""
