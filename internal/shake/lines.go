package shake

import (
	"bufio"
	"errors"
	"io"
	"strings"
)

// maxLineLen bounds a line read from redis-shake. A failed RESTORE logs the
// whole DUMP payload of the key (up to 512 MB); the rest of such a line is
// discarded.
const maxLineLen = 64 << 10

// readLines calls fn with each line of r, without its line ending, until
// EOF. A line longer than max bytes is cut: the token the cut falls in is
// dropped too (it could be the start of a URL with a password), a note is
// appended, and the rest of the line is discarded.
func readLines(r io.Reader, max int, fn func(string)) error {
	br := bufio.NewReaderSize(r, max)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			s := dropPartialToken(string(line), max-32) + " … (line cut)"
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			fn(s)
		} else if len(line) > 0 {
			s := strings.TrimSuffix(string(line), "\n")
			fn(strings.TrimSuffix(s, "\r"))
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
