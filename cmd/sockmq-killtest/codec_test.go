package main

import (
	"bufio"
	"bytes"
	"testing"

	paho5 "github.com/eclipse/paho.golang/packets"
	paho3 "github.com/eclipse/paho.mqtt.golang/packets"
)

// The harness's codec is checked against the paho libraries' codecs in
// both directions: what it writes they read, what they write it reads.

func decode5(t *testing.T, b []byte) *paho5.ControlPacket {
	t.Helper()
	cp, err := paho5.ReadPacket(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("paho.golang cannot read % x: %v", b, err)
	}
	return cp
}

func decode3(t *testing.T, b []byte) paho3.ControlPacket {
	t.Helper()
	cp, err := paho3.ReadPacket(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("paho.mqtt.golang cannot read % x: %v", b, err)
	}
	return cp
}

func readOwn(t *testing.T, b []byte) packet {
	t.Helper()
	p, err := readPacket(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("readPacket(% x): %v", b, err)
	}
	return p
}

func TestConnectEncodesForPaho(t *testing.T) {
	c5 := decode5(t, connectPacket(connectOptions{version: mqtt5, clientID: "sub-1", keepAlive: 30, sessionExpiry: 3600})).Content.(*paho5.Connect)
	if c5.ProtocolVersion != 5 || c5.ClientID != "sub-1" || c5.CleanStart || c5.KeepAlive != 30 ||
		c5.Properties.SessionExpiryInterval == nil || *c5.Properties.SessionExpiryInterval != 3600 {
		t.Fatalf("MQTT 5 CONNECT read back as %+v (expiry %v)", c5, c5.Properties.SessionExpiryInterval)
	}
	c5 = decode5(t, connectPacket(connectOptions{version: mqtt5, clientID: "pub", clean: true})).Content.(*paho5.Connect)
	if !c5.CleanStart || c5.Properties.SessionExpiryInterval != nil {
		t.Fatalf("clean MQTT 5 CONNECT read back as %+v", c5)
	}
	c3 := decode3(t, connectPacket(connectOptions{version: mqtt311, clientID: "sub-2", keepAlive: 30})).(*paho3.ConnectPacket)
	if c3.ProtocolVersion != 4 || c3.ProtocolName != "MQTT" || c3.ClientIdentifier != "sub-2" || c3.CleanSession || c3.Keepalive != 30 {
		t.Fatalf("MQTT 3.1.1 CONNECT read back as %+v", c3)
	}
}

func TestPublishSubscribeAndAcksEncodeForPaho(t *testing.T) {
	payload := payloadFor("r", msgID{1, 42})
	p5 := decode5(t, publishPacket(mqtt5, "killtest/r", 2, 513, true, payload)).Content.(*paho5.Publish)
	if p5.Topic != "killtest/r" || p5.QoS != 2 || p5.PacketID != 513 || !p5.Duplicate || !bytes.Equal(p5.Payload, payload) {
		t.Fatalf("MQTT 5 PUBLISH read back as %+v", p5)
	}
	p3 := decode3(t, publishPacket(mqtt311, "killtest/r", 1, 7, false, payload)).(*paho3.PublishPacket)
	if p3.TopicName != "killtest/r" || p3.Qos != 1 || p3.MessageID != 7 || p3.Dup || !bytes.Equal(p3.Payload, payload) {
		t.Fatalf("MQTT 3.1.1 PUBLISH read back as %+v", p3)
	}
	s5 := decode5(t, subscribePacket(mqtt5, 1, "killtest/r", 2)).Content.(*paho5.Subscribe)
	if s5.PacketID != 1 || len(s5.Subscriptions) != 1 || s5.Subscriptions[0].Topic != "killtest/r" || s5.Subscriptions[0].QoS != 2 {
		t.Fatalf("MQTT 5 SUBSCRIBE read back as %+v", s5)
	}
	s3 := decode3(t, subscribePacket(mqtt311, 1, "killtest/r", 1)).(*paho3.SubscribePacket)
	if s3.MessageID != 1 || len(s3.Topics) != 1 || s3.Topics[0] != "killtest/r" || s3.Qoss[0] != 1 {
		t.Fatalf("MQTT 3.1.1 SUBSCRIBE read back as %+v", s3)
	}
	for _, typ := range []byte{typePuback, typePubrec, typePubrel, typePubcomp} {
		b := ackPacket(typ, 300)
		if got := decode5(t, b).PacketID(); got != 300 {
			t.Errorf("MQTT 5 ack type %d: packet id %d", typ, got)
		}
		if got := decode3(t, b).Details().MessageID; got != 300 {
			t.Errorf("MQTT 3.1.1 ack type %d: packet id %d", typ, got)
		}
	}
	if cp := decode3(t, disconnectPacket()); cp.(*paho3.DisconnectPacket) == nil {
		t.Fatal("DISCONNECT not read")
	}
}

func TestReadsPahoPacketsWithProperties(t *testing.T) {
	u16 := func(v uint16) *uint16 { return &v }
	u32 := func(v uint32) *uint32 { return &v }
	one := byte(1)
	subID := 7
	props := &paho5.Properties{ReasonString: "fine", User: []paho5.User{{Key: "k", Value: "v"}},
		ServerKeepAlive: u16(45), ReceiveMaximum: u16(1024), AssignedClientID: "x", MaximumPacketSize: u32(1 << 20),
		RetainAvailable: &one, TopicAliasMaximum: u16(0)}

	var buf bytes.Buffer
	ack := paho5.NewControlPacket(paho5.CONNACK)
	ack.Content = &paho5.Connack{SessionPresent: true, Properties: props}
	if _, err := ack.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	ca, err := parseConnack(mqtt5, readOwn(t, buf.Bytes()).body)
	if err != nil || !ca.sessionPresent || ca.code != 0 || ca.serverKeepAlive != 45 {
		t.Fatalf("CONNACK = %+v, %v", ca, err)
	}

	buf.Reset()
	pub := paho5.NewControlPacket(paho5.PUBLISH)
	pub.Content = &paho5.Publish{Topic: "killtest/r", QoS: 2, PacketID: 9, Duplicate: true, Payload: []byte("kt r 0 1"),
		Properties: &paho5.Properties{ContentType: "text/plain", MessageExpiry: u32(60), SubscriptionIdentifier: &subID,
			User: []paho5.User{{Key: "a", Value: "b"}}, PayloadFormat: &one, CorrelationData: []byte{1, 2}}}
	if _, err := pub.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	p, err := parsePublish(mqtt5, readOwn(t, buf.Bytes()))
	if err != nil || p.topic != "killtest/r" || p.qos != 2 || p.id != 9 || !p.dup || string(p.payload) != "kt r 0 1" {
		t.Fatalf("PUBLISH = %+v, %v", p, err)
	}

	buf.Reset()
	sa := paho5.NewControlPacket(paho5.SUBACK)
	sa.Content = &paho5.Suback{PacketID: 1, Reasons: []byte{2}, Properties: &paho5.Properties{ReasonString: "granted"}}
	if _, err := sa.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if id, code, err := parseSuback(mqtt5, readOwn(t, buf.Bytes()).body); err != nil || id != 1 || code != 2 {
		t.Fatalf("SUBACK = %d %d %v", id, code, err)
	}

	buf.Reset()
	pa := paho5.NewControlPacket(paho5.PUBACK)
	pa.Content = &paho5.Puback{PacketID: 5, ReasonCode: 0x10, Properties: &paho5.Properties{ReasonString: "no subscribers"}}
	if _, err := pa.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if id, reason, err := parseAck(readOwn(t, buf.Bytes())); err != nil || id != 5 || reason != 0x10 {
		t.Fatalf("PUBACK = %d 0x%02x %v", id, reason, err)
	}

	buf.Reset()
	p3 := paho3.NewControlPacket(paho3.Publish).(*paho3.PublishPacket)
	p3.TopicName, p3.Qos, p3.MessageID, p3.Payload = "killtest/r", 1, 77, []byte("kt r 1 2")
	if err := p3.Write(&buf); err != nil {
		t.Fatal(err)
	}
	p, err = parsePublish(mqtt311, readOwn(t, buf.Bytes()))
	if err != nil || p.topic != "killtest/r" || p.qos != 1 || p.id != 77 || string(p.payload) != "kt r 1 2" {
		t.Fatalf("MQTT 3.1.1 PUBLISH = %+v, %v", p, err)
	}

	buf.Reset()
	c3 := paho3.NewControlPacket(paho3.Connack).(*paho3.ConnackPacket)
	c3.SessionPresent = true
	if err := c3.Write(&buf); err != nil {
		t.Fatal(err)
	}
	if ca, err := parseConnack(mqtt311, readOwn(t, buf.Bytes()).body); err != nil || !ca.sessionPresent || ca.serverKeepAlive != -1 {
		t.Fatalf("MQTT 3.1.1 CONNACK = %+v, %v", ca, err)
	}
}

func TestMalformedInputIsAnError(t *testing.T) {
	for _, b := range [][]byte{
		{0x30, 0xff, 0xff, 0xff, 0xff}, // remaining length of five bytes
		{0x30, 0xff, 0xff, 0x7f},       // larger than maxPacket
		{0x30, 0x05, 0x00},             // short body
	} {
		if _, err := readPacket(bufio.NewReader(bytes.NewReader(b))); err == nil {
			t.Errorf("readPacket(% x) accepted", b)
		}
	}
	if _, err := parsePublish(mqtt5, packet{typ: typePublish, flags: 2, body: []byte{0, 1, 'a', 0, 1, 5, 1}}); err == nil {
		t.Error("PUBLISH with a property list longer than the packet accepted")
	}
	if _, err := parseConnack(mqtt5, []byte{0, 0, 3, 0x99, 0, 0}); err == nil {
		t.Error("CONNACK with an unknown property accepted")
	}
	if _, _, err := parseSuback(mqtt311, []byte{0, 1}); err == nil {
		t.Error("SUBACK without a return code accepted")
	}
}
