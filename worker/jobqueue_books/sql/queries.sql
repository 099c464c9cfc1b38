-- The book pipeline's SQL (its tables come from its own migrations, in migrations/). Named
-- queries as in the core's queries.sql: "-- name: <name>" blocks, parameters only.

-- name: book_upsert
INSERT INTO books (id, file_path, title, authors, language, identifier, publisher, published,
                   description, chapter_count, word_count, parsed_at)
VALUES (%(id)s, %(file_path)s, %(title)s, %(authors)s, %(language)s, %(identifier)s,
        %(publisher)s, %(published)s, %(description)s, %(chapter_count)s, %(word_count)s,
        now())
ON CONFLICT (id) DO UPDATE
SET file_path = excluded.file_path, title = excluded.title, authors = excluded.authors,
    language = excluded.language, identifier = excluded.identifier,
    publisher = excluded.publisher, published = excluded.published,
    description = excluded.description, chapter_count = excluded.chapter_count,
    word_count = excluded.word_count, parsed_at = excluded.parsed_at;

-- name: book_chapters_delete
-- Re-parsing replaces the chapters (and so, by cascade, their passages).
DELETE FROM book_chapters WHERE book_id = %(book_id)s;

-- name: book_chapter_insert
INSERT INTO book_chapters (book_id, chapter_index, title, text, word_count)
VALUES (%(book_id)s, %(chapter_index)s, %(title)s, %(text)s, %(word_count)s);

-- name: book_get
SELECT id, title, authors, language, chapter_count, word_count FROM books WHERE id = %(id)s;

-- name: book_chapters_list
SELECT chapter_index, title, text, summary
FROM book_chapters
WHERE book_id = %(book_id)s
ORDER BY chapter_index;

-- name: book_passages_delete
DELETE FROM book_passages WHERE book_id = %(book_id)s;

-- name: book_passage_insert
INSERT INTO book_passages (book_id, chapter_index, passage_index, text, embedder, embedding)
VALUES (%(book_id)s, %(chapter_index)s, %(passage_index)s, %(text)s, %(embedder)s,
        %(embedding)s::real[]);

-- name: book_chapter_summary_set
UPDATE book_chapters
SET summary = %(summary)s, summarized_at = now()
WHERE book_id = %(book_id)s AND chapter_index = %(chapter_index)s;

-- name: book_passages_similar
-- The passages closest to a query vector (all vectors have unit length: the dot product is
-- the cosine similarity), among those made by the same embedder.
SELECT p.book_id, b.title, p.chapter_index, c.title, p.text,
       (SELECT sum(stored * asked) FROM unnest(p.embedding, %(query)s::real[]) AS v (stored, asked))
           AS score
FROM book_passages p
JOIN book_chapters c ON c.book_id = p.book_id AND c.chapter_index = p.chapter_index
JOIN books b ON b.id = p.book_id
WHERE p.embedder = %(embedder)s AND (%(book_id)s::text IS NULL OR p.book_id = %(book_id)s)
ORDER BY score DESC, p.book_id, p.chapter_index, p.passage_index
LIMIT %(limit)s;

-- name: book_list
SELECT b.id, b.title, b.authors, b.language, b.chapter_count, b.word_count,
       (SELECT count(*) FROM book_passages p WHERE p.book_id = b.id) AS passages,
       (SELECT summary FROM book_chapters c WHERE c.book_id = b.id AND summary IS NOT NULL
        ORDER BY chapter_index LIMIT 1) AS first_summary
FROM books b
ORDER BY b.id;
