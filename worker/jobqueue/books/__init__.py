"""The book domain: EPUB reading, book storage, embeddings and summaries."""
