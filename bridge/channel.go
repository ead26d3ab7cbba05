package bridge

import (
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/topic"
)

// isWildcard reports whether a channel name contains an MQTT wildcard.
func isWildcard(s string) bool { return strings.ContainsAny(s, "+#") }

// checkName validates what channels and topics share: non-empty, at most
// 65535 bytes with the prefix, UTF-8, no NUL.
func (h *Handler) checkName(channel string) *Error {
	switch {
	case channel == "":
		return NewError(ErrNameInvalidChannel, "channel name is empty")
	case len(h.cfg.TopicPrefix)+len(channel) > topic.MaxLen:
		return Errorf(ErrNameInvalidChannel, "channel name is longer than %d bytes", topic.MaxLen-len(h.cfg.TopicPrefix))
	case !utf8.ValidString(channel):
		return NewError(ErrNameInvalidChannel, "channel name is not valid UTF-8")
	case strings.IndexByte(channel, 0) >= 0:
		return NewError(ErrNameInvalidChannel, "channel name contains NUL")
	}
	return nil
}

// filterFor validates a channel to subscribe to and returns its MQTT
// filter. + must be a whole level, # a whole last level.
func (h *Handler) filterFor(channel string) (string, *Error) {
	if e := h.checkName(channel); e != nil {
		return "", e
	}
	if strings.HasPrefix(channel, "$share/") {
		return "", Errorf(ErrNameInvalidChannel, "channel %q: shared subscriptions are not available to SocketCluster clients", channel)
	}
	if err := topic.ValidFilter(channel); err != nil {
		return "", Errorf(ErrNameInvalidChannel, "channel %q: %v (as in sensors/+/temp or sensors/#)", channel, err)
	}
	return h.cfg.TopicPrefix + channel, nil
}

// topicFor validates a channel to publish to and returns its MQTT topic.
func (h *Handler) topicFor(channel string) (string, *Error) {
	if e := h.checkName(channel); e != nil {
		return "", e
	}
	if isWildcard(channel) {
		return "", Errorf(ErrNameInvalidChannel, "cannot publish to %q: channel names with + or # are subscription wildcards", channel)
	}
	t := h.cfg.TopicPrefix + channel
	if topic.BrokerOnly(t) {
		return "", Errorf(ErrNameForbidden, "cannot publish to %q: the %s namespace is reserved to the broker", channel, strings.SplitN(t, "/", 2)[0])
	}
	return t, nil
}

// EncodePublish maps a client's publish of data to channel into the MQTT
// message the bridge would publish: the channel is validated and prefixed,
// the data mapped by the payload table (see README.md). The error is an
// *Error with a SocketCluster error name. Last wills use it so that a will
// reads exactly like a publish.
func (h *Handler) EncodePublish(channel string, data json.RawMessage) (Message, error) {
	topic, e := h.topicFor(channel)
	if e != nil {
		return Message{}, e
	}
	m := toMQTT(data)
	m.Topic = topic
	return m, nil
}

// channelOf returns the channel name of an MQTT topic (the topic without
// the prefix).
func (h *Handler) channelOf(topic string) string {
	return strings.TrimPrefix(topic, h.cfg.TopicPrefix)
}

// notUTF8 stands for a channel name whose JSON text is not valid UTF-8
// (encoding/json would silently replace the bad bytes).
const notUTF8 = "\xff"

// channelString decodes a JSON string channel name. A name whose raw
// bytes are not valid UTF-8 is returned as notUTF8, which checkName
// refuses.
func channelString(raw json.RawMessage) (string, bool) {
	if !utf8.Valid(raw) {
		if len(raw) > 0 && raw[0] == '"' {
			return notUTF8, true
		}
		return "", false
	}
	return scproto.DataString(raw)
}

// parseSubscribe decodes the data of #subscribe ({channel, data?,
// waitForAuth?}, or, from old clients, a bare channel string) and of
// #unsubscribe (a bare string).
func parseSubscribe(data json.RawMessage) (string, bool) {
	if len(data) > 0 && data[0] == '"' {
		return channelString(data)
	}
	var req struct {
		Channel json.RawMessage `json:"channel"`
	}
	if len(data) == 0 || data[0] != '{' || json.Unmarshal(data, &req) != nil {
		return "", false
	}
	return channelString(req.Channel)
}

// parsePublish decodes the data of #publish: {channel, data}.
func parsePublish(data json.RawMessage) (channel string, payload json.RawMessage, ok bool) {
	var req struct {
		Channel json.RawMessage `json:"channel"`
		Data    json.RawMessage `json:"data"`
	}
	if len(data) == 0 || data[0] != '{' || json.Unmarshal(data, &req) != nil {
		return "", nil, false
	}
	channel, ok = channelString(req.Channel)
	return channel, req.Data, ok
}
