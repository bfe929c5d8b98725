"""The whole population at once (`pathway population`) and plans kept current (`pathway sweep`).

Same rules as the point of care: every patient goes through pathway.evaluation.Evaluator.
"""
