"""Formatting: text tables and histograms, flame graphs, pcap files."""
