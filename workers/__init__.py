"""Celery side of shopsearch (installed as ``shopsearch.workers``): the app and its tasks."""
