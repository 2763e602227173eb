//! Fleet simulator: fake nodes running the real agent over simulated hosts (built in a later step).
