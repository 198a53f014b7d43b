"""The cost by agent and by task on Apache Spark, for datasets past one machine (see job.py and README.md)."""
