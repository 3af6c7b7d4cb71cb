package endpoint

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		// URLs
		{"redacts the password of a URL, keeping the user",
			"connect redis://alice:s3cr3t!@h:6379/0 failed",
			"connect redis://alice:xxxxx@h:6379/0 failed"},
		{"redacts a default-user password",
			"rediss://:s3cr3t!@h:6380", "rediss://:xxxxx@h:6380"},
		{"redacts every URL in the text",
			"from redis://a:one1@h1 to valkeys://b:two2@h2\nand redis://c:three3@h3",
			"from redis://a:xxxxx@h1 to valkeys://b:xxxxx@h2\nand redis://c:xxxxx@h3"},
		{"redacts URLs in quotes side by side",
			`{"source":"redis://a:one1@h1","target":"redis://b:two2@h2"}`,
			`{"source":"redis://a:xxxxx@h1","target":"redis://b:xxxxx@h2"}`},
		{"redacts a password with an unencoded @ and /",
			"redis://u:p@ss/w@h:1", "redis://u:xxxxx@h:1"},
		{"redacts a unicode password",
			"redis://u:пароль✓@h", "redis://u:xxxxx@h"},
		{"redacts URLs of any scheme",
			"https://user:tok3n@example.com/x", "https://user:xxxxx@example.com/x"},
		{"leaves a URL without a password alone",
			"redis://alice@h:6379 and redis://h:6379", "redis://alice@h:6379 and redis://h:6379"},

		// key = value
		{"redacts a TOML password in double quotes",
			`password = "s3cr3t!"`, `password = "xxxxx"`},
		{"redacts a password with escaped quotes inside",
			`password = "s3\"cr3t" # comment`, `password = "xxxxx" # comment`},
		{"redacts a password in single quotes",
			`password = 's3cr3t!'`, `password = 'xxxxx'`},
		{"redacts an unterminated quoted password to the end of the line",
			"password = \"s3cr3t! still secret\nnext = 1", "password = \"xxxxx\nnext = 1"},
		{"redacts a YAML password",
			"auth:\n  password: s3cr3t!\n  user: alice", "auth:\n  password: xxxxx\n  user: alice"},
		{"redacts a JSON password",
			`{"user":"alice","password":"s3cr3t!","db":1}`, `{"user":"alice","password":"xxxxx","db":1}`},
		{"redacts a JSON password with a space and an escaped quote",
			`{"Password": "a\"b c"}`, `{"Password": "xxxxx"}`},
		{"redacts an unquoted JSON number password",
			`{"password":123456,"db":1}`, `{"password":xxxxx,"db":1}`},
		{"redacts prefixed keys such as source_password and REDISCLI_AUTH",
			"source_password=s3cr3t! REDISCLI_AUTH=s3cr3t! sourcePassword: s3cr3t!",
			"source_password=xxxxx REDISCLI_AUTH=xxxxx sourcePassword: xxxxx"},
		{"redacts a password in a query string, keeping the next parameter",
			"GET /?password=s3cr3t!&user=alice", "GET /?password=xxxxx&user=alice"},
		{"redacts a bare value with a quote inside",
			`password=ab"cd next`, `password=xxxxx next`},
		{"redacts logfmt keys such as secret and token",
			"level=info secret=abc token=def count=3", "level=info secret=xxxxx token=xxxxx count=3"},
		{"redacts multiple occurrences on one line",
			`password="a" password='b' password=c`, `password="xxxxx" password='xxxxx' password=xxxxx`},

		// redis.conf, CONFIG SET, MONITOR
		{"redacts requirepass in redis.conf",
			"requirepass s3cr3t!\nmasterauth \"other pw\"", "requirepass xxxxx\nmasterauth \"xxxxx\""},
		{"redacts CONFIG SET requirepass",
			"CONFIG SET requirepass s3cr3t!", "CONFIG SET requirepass xxxxx"},
		{"redacts MONITOR's quoted requirepass",
			`1700000000.1 [0 127.0.0.1:1] "config" "set" "requirepass" "s3cr3t!"`,
			`1700000000.1 [0 127.0.0.1:1] "config" "set" "requirepass" "xxxxx"`},

		// redis-cli flags
		{"redacts redis-cli -a",
			"redis-cli -h h -a s3cr3t! --no-auth-warning ping", "redis-cli -h h -a xxxxx --no-auth-warning ping"},
		{"redacts a quoted redis-cli -a",
			`redis-cli -a 's3 cr3t' ping`, `redis-cli -a 'xxxxx' ping`},
		{"redacts redis-cli --pass and --password=",
			"redis-cli --user u --pass s3cr3t! ; tool --password=s3cr3t!", "redis-cli --user u --pass xxxxx ; tool --password=xxxxx"},

		// AUTH
		{"redacts AUTH with a password only",
			"AUTH s3cr3t!", "AUTH xxxxx"},
		{"redacts AUTH with a user and a password, keeping the user",
			"> AUTH alice s3cr3t!\nOK", "> AUTH alice xxxxx\nOK"},
		{"redacts HELLO 3 AUTH",
			"[HELLO 3 AUTH default s3cr3t!]", "[HELLO 3 AUTH default xxxxx"},
		{"redacts MONITOR's quoted auth",
			`"auth" "alice" "s3cr3t!"` + "\n" + `"AUTH" "s3cr3t!"`, `"auth" "alice" "xxxxx"` + "\n" + `"AUTH" "xxxxx"`},
		{"does not read the next line as the AUTH password",
			"AUTH s3cr3t!\nalice", "AUTH xxxxx\nalice"},
		{"leaves the English word auth and the NOAUTH reply alone",
			"auth failed: NOAUTH Authentication required.", "auth failed: NOAUTH Authentication required."},

		// text that must stay
		{"leaves text without credentials alone",
			"copied 10 keys from 127.0.0.1:6379 db 0 in 3s", "copied 10 keys from 127.0.0.1:6379 db 0 in 3s"},
		{"leaves an empty string alone", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Redact(tt.in)
			assert.Equal(t, tt.want, got)
			assert.NotContains(t, got, "s3cr3t")
			assert.Equal(t, got, Redact(got), "redacting twice changes nothing")
		})
	}
}

func TestRedactHostileInputs(t *testing.T) {
	hostile := []string{
		"redis://u:" + secret + "@h\"quoted\" password=\"" + secret + "\"",
		"\x00redis://u:" + secret + "@h\x00",
		"redis://u:" + secret + "@h\r\npassword: " + secret + "\r\n",
		"password:" + secret + ",password:" + secret,
		strings.Repeat("password="+secret+" ", 100),
		"пароль password=«" + secret + "» 🔑 redis://ü:" + secret + "@höst",
		"'password': '" + secret + "', \"password\" : \"" + secret + "\"",
		"PASSWORD=" + secret + "\tPassWord = " + secret,
		"-a " + secret,
		"AUTH\t" + secret,
		`password = "` + secret + `\`,
	}
	for _, in := range hostile {
		t.Run("redacts "+strings.ToValidUTF8(in[:min(len(in), 40)], "?"), func(t *testing.T) {
			out := Redact(in)
			assert.NotContains(t, out, secret)
			assert.Equal(t, out, Redact(out))
		})
	}
}
