"""Explainers: pure computation (SHAP backends, importance, reason codes, patterns, metrics)."""
