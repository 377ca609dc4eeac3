"""Datasets: input shapes and class counts (`info`)."""
