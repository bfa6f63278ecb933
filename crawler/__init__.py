"""Scrapy spiders per source, item pipelines into the catalog, site profiles."""
