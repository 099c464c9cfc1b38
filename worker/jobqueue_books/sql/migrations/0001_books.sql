-- The book domain: what the parseBook, embedBook and summarizeBook jobs produce. Apart from
-- the queue's own tables; nothing in the queue depends on them.

CREATE TABLE books (
    id text PRIMARY KEY,                  -- the payload's bookId (a number or a string)
    file_path text NOT NULL,
    title text NOT NULL,
    authors text[] NOT NULL DEFAULT '{}',
    language text,
    identifier text,
    publisher text,
    published text,                       -- dc:date as written in the book
    description text,
    chapter_count integer NOT NULL,
    word_count integer NOT NULL,
    parsed_at timestamp with time zone NOT NULL DEFAULT now()
);

CREATE TABLE book_chapters (
    book_id text NOT NULL REFERENCES books (id) ON DELETE CASCADE,
    chapter_index integer NOT NULL,       -- 0-based, reading order
    title text NOT NULL,
    text text NOT NULL,
    word_count integer NOT NULL,
    summary text,                         -- set by summarizeBook
    summarized_at timestamp with time zone,
    PRIMARY KEY (book_id, chapter_index)
);

-- Passages of a chapter with their embedding (unit length, so a dot product is the cosine
-- similarity). Plain real[] keeps the project free of database extensions.
CREATE TABLE book_passages (
    book_id text NOT NULL,
    chapter_index integer NOT NULL,
    passage_index integer NOT NULL,
    text text NOT NULL,
    embedder text NOT NULL,               -- which model made the vector
    embedding real[] NOT NULL,
    PRIMARY KEY (book_id, chapter_index, passage_index),
    FOREIGN KEY (book_id, chapter_index)
        REFERENCES book_chapters (book_id, chapter_index) ON DELETE CASCADE
);
CREATE INDEX book_passages_embedder_idx ON book_passages (embedder);
