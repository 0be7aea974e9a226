"""Document parsing: pages → OCR → layout → segments → chunks (Ray-free)."""
