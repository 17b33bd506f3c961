"""`classify bench`: closed-loop load generation against running servers, in-process references, reports."""
