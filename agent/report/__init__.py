"""The daily availability report: ``lifeline report`` reads Prometheus and writes html, md, csv or json.

promapi (the HTTP API client), accounting (steps, outages, sums; pure), collect
(the queries that build a Report), formats and htmlpage (rendering), command (flags).
"""
