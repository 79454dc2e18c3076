"""The Flask middleware in front of OpenSearch (installed as ``shopsearch.plugin``)."""
