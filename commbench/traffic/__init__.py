"""Traffic: model cards, parallel plans, workloads, patterns and the exact communication they make."""
