"""Stage 2 (02_tokenize): the tokenizer, how a long review is cut (truncation), the tokenized splits and their
lengths (tokens); 02's views (token_views)."""
