package runtimecatalog

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/crc32"
	"strconv"
	"strings"
)

// A list's gzip body is built per request without compressing again: the
// envelope's start, which holds the request's ID, goes in a stored
// (uncompressed) deflate block; the constant rest is the deflate stream
// compressed once per change of the catalog; the trailer's CRC-32 of the
// whole is combined from the CRCs of the two parts. One gzip member, as
// every decoder reads (several members are not: some stop after the first).

// gzipRest is the compressed constant part of a body.
type gzipRest struct {
	deflated []byte // a complete deflate stream (its last block final)
	crc      uint32 // CRC-32 of the uncompressed rest
	size     int    // its length
}

func compressRest(rest []byte) (*gzipRest, error) {
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(rest); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return &gzipRest{deflated: buf.Bytes(), crc: crc32.ChecksumIEEE(rest), size: len(rest)}, nil
}

// member is the gzip member of start followed by the rest. start must be
// shorter than 64 KiB (one stored block).
func (g *gzipRest) member(start []byte) []byte {
	out := make([]byte, 0, 10+5+len(start)+len(g.deflated)+8)
	out = append(out, 0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff) // gzip header: deflate, no flags, no time, unknown OS
	// A stored block, not final: BFINAL=0, BTYPE=00, padded to the byte,
	// then LEN and its complement, then the bytes as they are.
	n := uint16(len(start))
	out = append(out, 0, byte(n), byte(n>>8), byte(^n), byte(^n>>8))
	out = append(out, start...)
	out = append(out, g.deflated...)
	crc := crc32Combine(crc32.ChecksumIEEE(start), g.crc, int64(g.size))
	out = binary.LittleEndian.AppendUint32(out, crc)
	return binary.LittleEndian.AppendUint32(out, uint32(len(start)+g.size))
}

// crc32Combine is the CRC-32 of A followed by B from the CRCs of A and B
// and B's length, as zlib's crc32_combine computes it: B's length in zero
// bits applied to A's CRC by squaring a GF(2) matrix, in O(log n).
func crc32Combine(crcA, crcB uint32, lenB int64) uint32 {
	if lenB <= 0 {
		return crcA
	}
	var even, odd [32]uint32
	odd[0] = crc32.IEEE // the operator for one zero bit
	row := uint32(1)
	for n := 1; n < 32; n++ {
		odd[n] = row
		row <<= 1
	}
	gf2Square(&even, &odd) // two zero bits
	gf2Square(&odd, &even) // four zero bits
	for {
		gf2Square(&even, &odd) // one zero byte, then 4, 16, …
		if lenB&1 != 0 {
			crcA = gf2Times(&even, crcA)
		}
		if lenB >>= 1; lenB == 0 {
			break
		}
		gf2Square(&odd, &even)
		if lenB&1 != 0 {
			crcA = gf2Times(&odd, crcA)
		}
		if lenB >>= 1; lenB == 0 {
			break
		}
	}
	return crcA ^ crcB
}

func gf2Times(mat *[32]uint32, vec uint32) uint32 {
	var sum uint32
	for i := 0; vec != 0; i, vec = i+1, vec>>1 {
		if vec&1 != 0 {
			sum ^= mat[i]
		}
	}
	return sum
}

func gf2Square(square, mat *[32]uint32) {
	for n := 0; n < 32; n++ {
		square[n] = gf2Times(mat, mat[n])
	}
}

// acceptsGzip reads a request's Accept-Encoding: gzip (or *) with a
// quality above 0. Absent, identity, or gzip;q=0 is no.
func acceptsGzip(headers map[string][]string) bool {
	var values []string
	for k, v := range headers {
		if strings.EqualFold(k, "Accept-Encoding") {
			values = append(values, v...)
		}
	}
	for _, value := range values {
		for _, coding := range strings.Split(value, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(coding), ";")
			name = strings.ToLower(strings.TrimSpace(name))
			if name != "gzip" && name != "x-gzip" && name != "*" {
				continue
			}
			q := 1.0
			for _, param := range strings.Split(params, ";") {
				if k, v, ok := strings.Cut(strings.TrimSpace(param), "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
					if parsed, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
						q = parsed
					}
				}
			}
			if q > 0 {
				return true
			}
		}
	}
	return false
}
