"""Pure planning: spec + observed state → desired state → actions. No I/O, no client libraries."""
